# rgw_doe: the Database Offload Engine
rgw_isa_pkg.sv
rgw_doe_pkg.sv
rgw_doe_evt_if.sv
rgw_doe_dec_if.sv
rgw_doe_alu.sv
rgw_doe_hash.sv
rgw_doe_table.sv
rgw_doe_regs.sv
rgw_doe.sv
