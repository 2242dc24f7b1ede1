"""The servers a serving benchmark compares, each started as its own process on a loopback port."""
