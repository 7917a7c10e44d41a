from pyphase.cli import main

main()
