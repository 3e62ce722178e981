"""The order-management system: orders, events, fills, positions, charges, kill switch."""
