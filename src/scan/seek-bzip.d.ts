/* Types for the part of seek-bzip (pure-JS bzip2 decoder, no types of its own) that scan/archive uses. */
declare module 'seek-bzip' {
  interface InputStream {
    readByte(): number;
    read(target: Uint8Array, offset: number, length: number): number;
    seek(pos: number): void;
    eof(): boolean;
  }
  interface OutputStream {
    writeByte(byte: number): void;
    write(bytes: Uint8Array, offset: number, length: number): number;
    flush(): void;
  }
  const Bunzip: { decode(input: InputStream | Uint8Array, output?: OutputStream, multistream?: boolean): Uint8Array | undefined };
  export default Bunzip;
}
