"""convscope worker package."""
