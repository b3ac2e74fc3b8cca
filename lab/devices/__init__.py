"""What a device is: the inventory (devices.yaml), the chip catalog and its data, backends and their processor class, and probes of what a device really has."""
