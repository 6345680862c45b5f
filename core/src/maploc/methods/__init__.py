"""Methods that ship with the core (registered through the core's own entry points)."""
