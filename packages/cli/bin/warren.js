#!/usr/bin/env node
// The `warren` command. Runs the compiled CLI (npm run build).
import { main } from '../dist/main.js';

process.exitCode = await main(process.argv);
