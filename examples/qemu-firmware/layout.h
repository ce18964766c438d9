/* Where the mintflash QEMU example firmware finds its per-device data (see README.md). The job
 * writes the serial number, the test bench (QEMU's generic loader) places the UID, the owner's
 * clone protection stores the UID signature. */
#ifndef QEMU_FIRMWARE_LAYOUT_H
#define QEMU_FIRMWARE_LAYOUT_H

#define UART0_BASE        0x4000C000u /* PL011 of the lm3s6965evb board */
#define SERIAL_ADDRESS    0x0003FC00u /* flash: serial number, 4 bytes, little-endian */
#define SIGNATURE_ADDRESS 0x0003F800u /* flash: UID signature, SIGNATURE_LENGTH bytes */
#define SIGNATURE_LENGTH  64u
#define UID_ADDRESS       0x2000FF00u /* RAM: the device UID, UID_LENGTH bytes */
#define UID_LENGTH        8u

#endif
