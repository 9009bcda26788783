"""The built-in architecture specs, shipped as package data (`cnncalc summary resnet50`)."""
