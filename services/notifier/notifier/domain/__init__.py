"""Pure notifier domain: what the ledger says, who hears about it, signatures, back-off."""
