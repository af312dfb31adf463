"""What irqlock computes from measurements: histograms and percentiles, lock and task graphs."""
