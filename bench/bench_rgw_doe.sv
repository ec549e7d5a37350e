// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Cycle-benchmark wrapper for rgw_doe (bench/hdl.py): the flat ports of sim/doe/test_rgw_doe.sv
 * plus a row streamer, so that a million LOAD events reach the DOE without one cocotb
 * transaction each (about 1 to 4 ms per row, an hour for the 1M-order table).
 *
 * The streamer reads its rows at time 0 from bench_rows.hex in the simulator's working directory
 * (the build directory; bench/hdl.py writes it), when that file exists.  One row per line:
 *
 *   | table_id[7:0] | nulls[COLS-1:0] (1: NULL) | data[COLS*64-1:0] (word 0 lowest) |
 *
 * While load_go is high and load_done low, the streamer owns the event port: it offers rows
 * load_first .. load_end - 1 (load_end > load_first) as LOAD events (kind load_kind, valid held
 * high, tag = row number) through the DOE's own handshake, and raises load_done once the last is
 * accepted.  A table can thus grow in stages, with measurements in between.  The decisions of the LOADs
 * leave on m_dec like any other (cocotb holds m_dec_ready high and ignores them).  With load_go
 * low the port is cocotb's, exactly as in test_rgw_doe.
 */
module bench_rgw_doe #(
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
    parameter int DIV_BITS = 4,
    // rows the streamer holds: every table's rows of one load
    parameter int LOAD_DEPTH = 2 * ROWS
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
    output wire logic [RULES-1:0]          m_dec_failed,

    input  wire logic                      load_go,
    // 32 bits for cocotb; the streamer uses the low CL_DEPTH + 1
    /* verilator lint_off UNUSEDSIGNAL */
    input  wire logic [31:0]               load_first,
    /* verilator lint_on UNUSEDSIGNAL */
    input  wire logic [31:0]               load_end,
    input  wire logic [2:0]                load_kind,
    output wire logic                      load_done
);

localparam int ROW_WORDS = COLS < IN_WORDS ? COLS : IN_WORDS;
localparam int ROM_W = 8 + ROW_WORDS + ROW_WORDS * 64;
localparam int CL_DEPTH = $clog2(LOAD_DEPTH);

logic [ROM_W-1:0] rom [LOAD_DEPTH];

initial begin : load_rom
    int fd;
    fd = $fopen("bench_rows.hex", "r");
    if (fd != 0) begin
        $fclose(fd);
        $readmemh("bench_rows.hex", rom);
    end
end

logic [CL_DEPTH:0] ptr_reg;
logic              done_reg;

wire               run = load_go && !done_reg;
wire [ROM_W-1:0]   cur = rom[ptr_reg[CL_DEPTH-1:0]];

rgw_doe_evt_if #(.IN_WORDS(IN_WORDS), .TAG_W(TAG_W)) evt ();
rgw_doe_dec_if #(.RULES(RULES), .TAG_W(TAG_W)) dec ();

assign evt.valid = run ? 1'b1 : s_evt_valid;
assign s_evt_ready = run ? 1'b0 : evt.ready;
assign evt.tag = run ? TAG_W'(ptr_reg) : s_evt_tag;
assign evt.kind = run ? load_kind : s_evt_kind;
assign evt.table_id = run ? cur[ROM_W-1 -: 8] : s_evt_table;
// words past the row's are NULL
assign evt.nulls = run ? {{(IN_WORDS - ROW_WORDS){1'b1}}, cur[ROW_WORDS * 64 +: ROW_WORDS]} : s_evt_null;
assign evt.data = run ? (IN_WORDS * 64)'(cur[ROW_WORDS * 64 - 1:0]) : s_evt_data;

assign load_done = done_reg;

always_ff @(posedge clk) begin
    if (rst || !load_go) begin
        ptr_reg <= (CL_DEPTH + 1)'(load_first);
        done_reg <= 1'b0;
    end else if (run && evt.ready && 32'(ptr_reg) + 1 == load_end) begin
        done_reg <= 1'b1;
    end else if (run && evt.ready) begin
        ptr_reg <= ptr_reg + 1;
    end
end

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
