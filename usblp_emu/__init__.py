"""usblp_emu: the usblp driver's object lifetime, emulated (filled in by later steps)."""
