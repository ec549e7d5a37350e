// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Decision stream out of the DOE (valid/ready), one per event, in event order:
 *
 *   | tag[TAG_W-1:0] | accept | failed[RULES-1:0] (bit i: rule id i failed) |
 */
interface rgw_doe_dec_if #(
    // rules (width of the failed-rule mask)
    parameter int RULES = 64,
    // order tag width
    parameter int TAG_W = 32
) ();
    // Waiver: each side drives or reads its half of the interface; a lint of one side alone
    // sees the other half as undriven or unused.
    /* verilator lint_off UNDRIVEN */
    /* verilator lint_off UNUSEDSIGNAL */
    logic             valid;
    logic             ready;
    logic [TAG_W-1:0] tag;
    logic             accept;
    logic [RULES-1:0] failed;
    /* verilator lint_on UNUSEDSIGNAL */
    /* verilator lint_on UNDRIVEN */

    modport src (output valid, output tag, output accept, output failed, input ready);
    modport snk (input valid, input tag, input accept, input failed, output ready);
endinterface

`resetall
