"""geventp2p.crypto"""
