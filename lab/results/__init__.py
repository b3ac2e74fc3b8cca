"""The store and what is read from it: typed records both ways, statistics, quality, comparability, sustained windows, busy host, operator profiles, results import."""
