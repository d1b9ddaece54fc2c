"""geventp2p.sansio"""
