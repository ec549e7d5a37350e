// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Event stream into the DOE (valid/ready):
 *
 *   | tag[TAG_W-1:0] | kind[2:0] (rgw_isa_pkg::event_t) | table_id[7:0] (LOAD) | nulls[IN_WORDS] | data[IN_WORDS*64] |
 *
 * Word i of the event is data[64*i +: 64], NULL when nulls[i] is set.
 */
interface rgw_doe_evt_if #(
    // input words of an event
    parameter int IN_WORDS = 16,
    // order tag width
    parameter int TAG_W = 32
) ();
    // Waiver: each side drives or reads its half of the interface; a lint of one side alone
    // sees the other half as undriven or unused.
    /* verilator lint_off UNDRIVEN */
    /* verilator lint_off UNUSEDSIGNAL */
    logic                   valid;
    logic                   ready;
    logic [TAG_W-1:0]       tag;
    logic [2:0]             kind;
    logic [7:0]             table_id;
    logic [IN_WORDS-1:0]    nulls;
    logic [IN_WORDS*64-1:0] data;
    /* verilator lint_on UNUSEDSIGNAL */
    /* verilator lint_on UNDRIVEN */

    modport src (output valid, output tag, output kind, output table_id, output nulls, output data, input ready);
    modport snk (input valid, input tag, input kind, input table_id, input nulls, input data, output ready);
endinterface

`resetall
