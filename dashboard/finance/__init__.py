"""Finance reports: chargeback and allocation, FOCUS export, closed periods, reconciliation."""
