// SPDX-License-Identifier: Apache-2.0

`resetall
`timescale 1ns / 1ps
`default_nettype none

/*
 * Internal interfaces of the DOE (not part of the ISA; the ISA package is generated).
 */
package rgw_doe_pkg;

    // commands of the table unit (rgw_doe_table)
    typedef enum logic [2:0] {
        TCMD_LOOKUP = 3'd0,  // handle of the row whose key equals key[0..n_key-1]
        TCMD_READ = 3'd1,  // cell (table, col, row), NULL outside the table's rows
        TCMD_ALLOC = 3'd2,  // append a row with the key in its key columns, index it
        TCMD_WRITE = 3'd3,  // cell (table, col, row) = value, for a row inside the table
        TCMD_SCAN = 3'd4,  // best row of scan spec `table` among rows matching key
        TCMD_RB_CELL = 3'd5,  // read-back: cell (table, col, row) whatever the row count
        TCMD_RB_COUNT = 3'd6  // read-back: row count of `table`
    } tcmd_t;

endpackage

`resetall
