from pyphase.console import main

main()
