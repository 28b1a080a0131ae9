"""Built-in actions and the local backend, registered through entry points like any plugin."""
