// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * DOE register file: REGS registers of {null, value[63:0]}, RD_PORTS asynchronous read ports,
 * one write port per ALU lane, the constant pool's load port, and a clear that starts a section.
 *
 * A register file with LANES write ports and dozens of read ports in flip-flops costs a REGS:1
 * multiplexer of 65 bits per read port and a LANES-way write multiplexer per register; at 256
 * registers and 25 ports that is most of the DOE's logic.  Here every writer has a bank of its own
 * (one write port each, so the banks are LUT RAM with a copy per read port), and a live value
 * table (LVT) in flip-flops says which source holds each register's current value:
 *
 *   source       value                           set by
 *   0..LANES-1   bank of that lane               a write of that lane
 *   SRC_IN       in_data / in_null (input word)  clear, registers 0..IN_WORDS-1
 *   SRC_CONST    constant pool bank              a load of the constant's value (or NULL bit)
 *   SRC_NULL     NULL, value 0                   clear, registers IN_WORDS.. not loaded as constants
 *
 * The value and the NULL bit have a table each because the load port writes them separately.
 * A read takes the LVT entry (a REGS:1 multiplexer of a few bits) and selects among the banks.
 *
 * Semantics (those of a flip-flop register file):
 *   - reads see the registers as they were before the clock edge;
 *   - lanes writing one register in the same cycle: the highest lane wins;
 *   - clear: registers below IN_WORDS take in_data / in_null (as they are after the edge: the
 *     caller loads them in the same cycle), every other register that is not a loaded constant
 *     becomes NULL (value 0); a constant keeps its current value, even one a lane wrote over;
 *   - rst forgets which registers are constants (the next clear makes them NULL);
 *   - a register index >= REGS reads NULL (value 0) and is never written.
 */
module rgw_doe_regs #(
    // registers (a power of two)
    parameter int REGS = 256,
    // write ports (ALU lanes)
    parameter int LANES = 8,
    // read ports
    parameter int RD_PORTS = 25,
    // input registers loaded by a clear
    parameter int IN_WORDS = 16
) (
    input  wire logic                                      clk,
    input  wire logic                                      rst,

    input  wire logic [RD_PORTS-1:0][rgw_isa_pkg::REG_W-1:0] rd_addr,
    output wire logic [RD_PORTS-1:0][64:0]                 rd_data,  // {null, value}

    input  wire logic [LANES-1:0]                          wr_en,
    input  wire logic [LANES-1:0][rgw_isa_pkg::REG_W-1:0]  wr_addr,
    input  wire logic [LANES-1:0][64:0]                    wr_data,  // {null, value}

    input  wire logic                                      c_we_value,
    input  wire logic                                      c_we_null,
    input  wire logic [$clog2(REGS)-1:0]                   c_addr,
    input  wire logic [63:0]                               c_data,  // the value; bit 0: the NULL bit

    input  wire logic                                      clear,
    input  wire logic [IN_WORDS*64-1:0]                    in_data,
    input  wire logic [IN_WORDS-1:0]                       in_null
);

import rgw_isa_pkg::*;

localparam int CL_REGS = $clog2(REGS);
localparam int SRC_IN = LANES;
localparam int SRC_CONST = LANES + 1;
localparam int SRC_NULL = LANES + 2;
localparam int SRC_W = $clog2(LANES + 3);
localparam int CL_IN = IN_WORDS > 1 ? $clog2(IN_WORDS) : 1;

initial begin
    if ((1 << CL_REGS) != REGS) $fatal(1, "rgw_doe_regs: REGS must be a power of two");
    if (REGS > (1 << REG_W)) $fatal(1, "rgw_doe_regs: REGS must fit the register field");
    if (IN_WORDS > REGS) $fatal(1, "rgw_doe_regs: IN_WORDS must not exceed REGS");
end

// ---------------------------------------------------------------- live value tables

logic [REGS-1:0][SRC_W-1:0] lvt_val_reg;
logic [REGS-1:0][SRC_W-1:0] lvt_null_reg;
logic [REGS-1:0]            const_reg;

// indexed writes rather than a next-state loop over every register: the same result (the later
// writes win: clear, then the load port, then the lanes in order), and a simulator evaluates
// LANES writes per cycle instead of REGS * LANES comparisons
always_ff @(posedge clk) begin
    if (clear) begin
        for (int r = 0; r < REGS; r++) begin
            if (r < IN_WORDS) begin
                lvt_val_reg[r] <= SRC_W'(SRC_IN);
                lvt_null_reg[r] <= SRC_W'(SRC_IN);
            end else if (!const_reg[r]) begin
                lvt_val_reg[r] <= SRC_W'(SRC_NULL);
                lvt_null_reg[r] <= SRC_W'(SRC_NULL);
            end
        end
    end
    if (c_we_value) begin
        lvt_val_reg[c_addr] <= SRC_W'(SRC_CONST);
        const_reg[c_addr] <= 1'b1;
    end
    if (c_we_null) begin
        lvt_null_reg[c_addr] <= SRC_W'(SRC_CONST);
        const_reg[c_addr] <= 1'b1;
    end
    for (int l = 0; l < LANES; l++) begin
        if (wr_en[l] && 32'(wr_addr[l]) < REGS) begin
            lvt_val_reg[CL_REGS'(wr_addr[l])] <= SRC_W'(l);
            lvt_null_reg[CL_REGS'(wr_addr[l])] <= SRC_W'(l);
        end
    end
    if (rst) begin
        const_reg <= '0;
    end
end

// ---------------------------------------------------------------- banks

// bank_rd[p][s]: the value and NULL bit that source s holds for read port p's register
logic [RD_PORTS-1:0][LANES+1:0][63:0] bank_rd_val;
logic [RD_PORTS-1:0][LANES+1:0]       bank_rd_null;

genvar gl, gp;
generate
    for (gl = 0; gl < LANES; gl++) begin : g_lane
        // distributed: yosys counts a flip-flop memory's cost without its read multiplexers and
        // picks flip-flops over LUT RAM copied for 25 read ports
        (* ram_style = "distributed" *) logic [63:0] mem_val [REGS];
        (* ram_style = "distributed" *) logic        mem_null [REGS];
        always_ff @(posedge clk) begin
            if (wr_en[gl] && 32'(wr_addr[gl]) < REGS) begin
                mem_val[CL_REGS'(wr_addr[gl])] <= wr_data[gl][63:0];
                mem_null[CL_REGS'(wr_addr[gl])] <= wr_data[gl][64];
            end
        end
        for (gp = 0; gp < RD_PORTS; gp++) begin : g_rd
            assign bank_rd_val[gp][gl] = mem_val[CL_REGS'(rd_addr[gp])];
            assign bank_rd_null[gp][gl] = mem_null[CL_REGS'(rd_addr[gp])];
        end
    end
endgenerate

// the input words, padded to a power of two so that any register index selects a word
logic [(1 << CL_IN)-1:0][63:0] in_val_pad;
logic [(1 << CL_IN)-1:0]       in_null_pad;
always_comb begin
    in_val_pad = '0;
    in_null_pad = '1;
    for (int i = 0; i < IN_WORDS; i++) begin
        in_val_pad[i] = in_data[i*64 +: 64];
        in_null_pad[i] = in_null[i];
    end
end

// constant pool: the value and the NULL bit load separately
(* ram_style = "distributed" *) logic [63:0] cmem_val [REGS];
(* ram_style = "distributed" *) logic        cmem_null [REGS];
always_ff @(posedge clk) begin
    if (c_we_value) begin
        cmem_val[c_addr] <= c_data;
    end
    if (c_we_null) begin
        cmem_null[c_addr] <= c_data[0];
    end
end

generate
    for (gp = 0; gp < RD_PORTS; gp++) begin : g_port
        logic [SRC_W-1:0] src_val, src_null;
        logic [63:0]      v;
        logic             n;
        assign bank_rd_val[gp][SRC_CONST] = cmem_val[CL_REGS'(rd_addr[gp])];
        assign bank_rd_null[gp][SRC_CONST] = cmem_null[CL_REGS'(rd_addr[gp])];
        assign bank_rd_val[gp][SRC_IN] = in_val_pad[CL_IN'(rd_addr[gp])];
        assign bank_rd_null[gp][SRC_IN] = in_null_pad[CL_IN'(rd_addr[gp])];
        assign src_val = lvt_val_reg[CL_REGS'(rd_addr[gp])];
        assign src_null = lvt_null_reg[CL_REGS'(rd_addr[gp])];
        always_comb begin
            v = 64'd0;
            n = 1'b1;
            if (32'(src_val) < SRC_NULL) begin
                v = bank_rd_val[gp][src_val];
            end
            if (32'(src_null) < SRC_NULL) begin
                n = bank_rd_null[gp][src_null];
            end
            if (32'(rd_addr[gp]) >= REGS) begin
                v = 64'd0;
                n = 1'b1;
            end
        end
        assign rd_data[gp] = {n, v};
    end
endgenerate

endmodule

`resetall
