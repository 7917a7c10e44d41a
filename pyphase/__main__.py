from pyphase.cli import console

console()
