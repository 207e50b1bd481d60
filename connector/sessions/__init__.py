"""Session files in whatsmeow's SQLite format (no neonize import here)."""
