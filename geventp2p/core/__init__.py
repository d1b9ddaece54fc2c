"""geventp2p.core"""
