SELECT COUNT(*) FROM journal_entries
