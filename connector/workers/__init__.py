"""Session workers: one process per neonize session, or one sim process for many accounts."""
