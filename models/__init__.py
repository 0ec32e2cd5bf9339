"""convscope models package."""
