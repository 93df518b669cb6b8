"""Observe: rollouts and exec events turned into usage, cost, activity and receipts."""
