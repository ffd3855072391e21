"""The notifier: alerts introducers of what they earn (see issue 4)."""
