"""Neural-network modules (PyTorch-shaped): Module, Parameter, layers, recurrent layers."""
