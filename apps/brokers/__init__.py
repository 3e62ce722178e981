"""The only door to the market: the Broker interface, PaperBroker and KiteBroker."""
