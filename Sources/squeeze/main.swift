import ArgumentParser
Squeeze.main()
