# rgw_doe_alu: one ALU lane
rgw_isa_pkg.sv
rgw_doe_alu.sv
