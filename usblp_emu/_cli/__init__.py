from usblp_emu._cli._main import main as main
