/** The run contract lives with the protocol in scheduler/; the node side imports it from here. */
export * from '../scheduler/run-spec.js';
