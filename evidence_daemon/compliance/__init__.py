"""The 24-hour rule: deadlines and compliance states (pure functions)."""
