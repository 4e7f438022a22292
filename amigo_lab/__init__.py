"""amigo_lab: prototype, debug and measure voice agents on Amigo's real-time voice API."""
