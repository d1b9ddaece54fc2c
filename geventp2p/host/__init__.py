"""geventp2p.host"""
