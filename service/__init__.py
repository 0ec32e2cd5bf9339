"""convscope service package."""
