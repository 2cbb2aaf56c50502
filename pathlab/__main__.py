from pathlab.train import main

main()
