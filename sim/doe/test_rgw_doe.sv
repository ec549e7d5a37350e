// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Testbench wrapper for rgw_doe: the event and decision interfaces as flat ports for cocotb.
 */
module test_rgw_doe #(
    // see rgw_doe for every parameter
    parameter int LANES = 8,
    parameter int REGS = 256,
    parameter int PROG_ROWS = 256,
    parameter int TABLES = 8,
    parameter int COLS = 16,
    parameter int ROWS = 1024,
    parameter int KEY_WORDS = 6,
    parameter int CL_BUCKETS = $clog2(ROWS) + 1,
    parameter int WAYS = 4,
    parameter int SCANS = 16,
    parameter int RULES = 64,
    parameter int IN_WORDS = 16,
    parameter int TAG_W = 32,
    parameter int DIV_BITS = 4
) (
    input  wire logic                      clk,
    input  wire logic                      rst,

    input  wire logic                      s_cfg_valid,
    output wire logic                      s_cfg_ready,
    input  wire logic                      s_cfg_write,
    input  wire logic [31:0]               s_cfg_addr,
    input  wire logic [63:0]               s_cfg_data,
    output wire logic                      m_cfg_rd_valid,
    output wire logic [63:0]               m_cfg_rd_data,

    input  wire logic                      s_evt_valid,
    output wire logic                      s_evt_ready,
    input  wire logic [TAG_W-1:0]          s_evt_tag,
    input  wire logic [2:0]                s_evt_kind,
    input  wire logic [7:0]                s_evt_table,
    input  wire logic [IN_WORDS-1:0]       s_evt_null,
    input  wire logic [IN_WORDS*64-1:0]    s_evt_data,

    output wire logic                      m_dec_valid,
    input  wire logic                      m_dec_ready,
    output wire logic [TAG_W-1:0]          m_dec_tag,
    output wire logic                      m_dec_accept,
    output wire logic [RULES-1:0]          m_dec_failed
);

rgw_doe_evt_if #(.IN_WORDS(IN_WORDS), .TAG_W(TAG_W)) evt ();
rgw_doe_dec_if #(.RULES(RULES), .TAG_W(TAG_W)) dec ();

assign evt.valid = s_evt_valid;
assign s_evt_ready = evt.ready;
assign evt.tag = s_evt_tag;
assign evt.kind = s_evt_kind;
assign evt.table_id = s_evt_table;
assign evt.nulls = s_evt_null;
assign evt.data = s_evt_data;

assign m_dec_valid = dec.valid;
assign dec.ready = m_dec_ready;
assign m_dec_tag = dec.tag;
assign m_dec_accept = dec.accept;
assign m_dec_failed = dec.failed;

rgw_doe #(
    .LANES(LANES),
    .REGS(REGS),
    .PROG_ROWS(PROG_ROWS),
    .TABLES(TABLES),
    .COLS(COLS),
    .ROWS(ROWS),
    .KEY_WORDS(KEY_WORDS),
    .CL_BUCKETS(CL_BUCKETS),
    .WAYS(WAYS),
    .SCANS(SCANS),
    .RULES(RULES),
    .IN_WORDS(IN_WORDS),
    .TAG_W(TAG_W),
    .DIV_BITS(DIV_BITS)
) dut (
    .clk(clk),
    .rst(rst),
    .s_cfg_valid(s_cfg_valid),
    .s_cfg_ready(s_cfg_ready),
    .s_cfg_write(s_cfg_write),
    .s_cfg_addr(s_cfg_addr),
    .s_cfg_data(s_cfg_data),
    .m_cfg_rd_valid(m_cfg_rd_valid),
    .m_cfg_rd_data(m_cfg_rd_data),
    .s_evt(evt),
    .m_dec(dec)
);

endmodule

`resetall
