# rgw_doe_regs: the DOE's register file
rgw_isa_pkg.sv
rgw_doe_regs.sv
