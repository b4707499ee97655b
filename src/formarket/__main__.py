from formarket.cli import main

main()
