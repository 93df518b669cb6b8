"""govern: policy, the hook guard, budget, approvals and the signed receipt ledger."""
