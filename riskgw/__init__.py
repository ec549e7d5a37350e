"""riskgw: an FPGA-offloaded pre-trade risk gateway."""

__version__ = "0.1.0"
