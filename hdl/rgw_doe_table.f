# rgw_doe_table: column store, hash index and scan engine
rgw_isa_pkg.sv
rgw_doe_pkg.sv
rgw_doe_hash.sv
rgw_doe_table.sv
