"""geventp2p.testing"""
