"""geventp2p.net"""
