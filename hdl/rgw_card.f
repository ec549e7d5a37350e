# rgw_card: the DOE behind the TOE streams and the AXI-Lite register blocks
rgw_isa_pkg.sv
rgw_doe_pkg.sv
rgw_proto_pkg.sv
rgw_card_pkg.sv
rgw_doe_evt_if.sv
rgw_doe_dec_if.sv
rgw_doe_alu.sv
rgw_doe_hash.sv
rgw_doe_table.sv
rgw_doe_regs.sv
rgw_doe.sv
rgw_card_rx.sv
rgw_card_tx.sv
rgw_card_regs.sv
rgw_card.sv
