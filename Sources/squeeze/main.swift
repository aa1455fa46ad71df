import SqueezeCLI

SqueezeCommand.main()
