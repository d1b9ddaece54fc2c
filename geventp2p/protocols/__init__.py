"""geventp2p.protocols"""
