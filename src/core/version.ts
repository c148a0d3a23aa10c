/** befw's version: the one place it is written (package.json must agree; a unit test checks). */
export const VERSION = '0.1.0';
