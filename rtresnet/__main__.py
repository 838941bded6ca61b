from rtresnet.cli import run

run()
