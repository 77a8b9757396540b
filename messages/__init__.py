"""What the bot says: reply values, the Chinese copy, and outbound message payloads.
May import models (for types) only."""
